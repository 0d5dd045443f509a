"""maskrcnnlib: the library behind i.ann.maskrcnn.train and i.ann.maskrcnn.detect.

Importing the package is cheap: TensorFlow and Keras are imported only by the
submodules that need them, so GRASS modules can import it before deciding to
load the network.
"""

__version__ = "0.1.0"
