MODULE_TOPDIR = ../..

PGM = i.ann.maskrcnn

SUBDIRS = maskrcnnlib \
	i.ann.maskrcnn.train \
	i.ann.maskrcnn.detect

include $(MODULE_TOPDIR)/include/Make/Dir.make

# The suite page shows the detect module's figure: it goes wherever the page goes.
FIGURE = i_ann_maskrcnn_detect_demo.png

default: parsubdirs htmldir $(HTMLDIR)/$(FIGURE)

$(HTMLDIR)/$(FIGURE): i.ann.maskrcnn.detect/$(FIGURE) | $(HTMLDIR)
	$(INSTALL_DATA) $< $@

# the page as built into HTMLDIR (GRASS header and footer), not its source
install: installsubdirs
	$(INSTALL_DATA) $(HTMLDIR)/$(PGM).html $(INST_DIR)/docs/html/
	$(INSTALL_DATA) $(HTMLDIR)/$(FIGURE) $(INST_DIR)/docs/html/
