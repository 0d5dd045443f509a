"""What GRASS's g.extension requires before it installs anything, read from its own source.

GRASS 8.2's g.extension runs check_progs() before every install, even from a
local directory: `for prog in (MAKE, "gcc", "svn"): if not grass.find_program(prog, ...)`
(later versions ask for "git"). Reading the installed script, not a copy of the
list, lets a test notice when a GRASS version asks for something else.
"""
import ast
import sys


def required_programs(source):
    """The programs check_progs() asks find_program for, in the order it asks.

    source: the text of a g.extension script. A name such as MAKE is resolved
    through the script's top-level string assignments, in the branch of a
    top-level `if` that holds here (`if sys.platform.startswith("freebsd")`).
    Raises LookupError when there is no check_progs() or nothing in it can be
    read: then the test needs updating, and must not pass by finding nothing.
    """
    module = ast.parse(source)
    check = next((node for node in module.body
                  if isinstance(node, ast.FunctionDef) and node.name == "check_progs"), None)
    if check is None:
        raise LookupError("g.extension defines no check_progs()")
    names = top_level_strings(module.body)
    loops = {node.target.id: node.iter.elts for node in ast.walk(check)
             if isinstance(node, ast.For) and isinstance(node.target, ast.Name)
             and isinstance(node.iter, (ast.Tuple, ast.List))}
    programs = []
    for node in ast.walk(check):
        if isinstance(node, ast.Call) and called_name(node.func) == "find_program" and node.args:
            first = node.args[0]
            values = loops.get(first.id, [first]) if isinstance(first, ast.Name) else [first]
            programs += [string_value(value, names) for value in values]
    if not programs:
        raise LookupError("check_progs() calls find_program with nothing this reader understands")
    return programs


def called_name(function):
    """'find_program' for find_program(...), grass.find_program(...) or gs.find_program(...)."""
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else None


def string_value(node, names):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    raise LookupError(f"cannot read a program name from {ast.unparse(node)!r}")


def top_level_strings(body):
    """{name: value} of `NAME = "text"` statements, following top-level ifs on this machine."""
    values = {}
    for node in body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            values.update((target.id, node.value.value) for target in node.targets
                          if isinstance(target, ast.Name))
        elif isinstance(node, ast.If):
            try:  # tests on the platform, such as sys.platform.startswith("freebsd")
                holds = eval(compile(ast.Expression(node.test), "g.extension", "eval"),
                             {"sys": sys})
            except (NameError, AttributeError):  # tests on things not imported here
                continue
            values.update(top_level_strings(node.body if holds else node.orelse))
    return values
