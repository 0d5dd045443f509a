MODULE_TOPDIR = ../..

PGM = i.ann.maskrcnn

SUBDIRS = maskrcnnlib \
	i.ann.maskrcnn.train \
	i.ann.maskrcnn.detect

include $(MODULE_TOPDIR)/include/Make/Dir.make

# The suite page shows the detect module's figures: they go wherever the page goes.
FIGURES = i_ann_maskrcnn_detect_demo.png i_ann_maskrcnn_detect_realdata.png

default: parsubdirs htmldir $(patsubst %,$(HTMLDIR)/%,$(FIGURES))

$(patsubst %,$(HTMLDIR)/%,$(FIGURES)): $(HTMLDIR)/%: i.ann.maskrcnn.detect/% | $(HTMLDIR)
	$(INSTALL_DATA) $< $@

# the page as built into HTMLDIR (GRASS header and footer), not its source
install: installsubdirs
	$(INSTALL_DATA) $(HTMLDIR)/$(PGM).html $(INST_DIR)/docs/html/
	$(INSTALL_DATA) $(patsubst %,$(HTMLDIR)/%,$(FIGURES)) $(INST_DIR)/docs/html/
