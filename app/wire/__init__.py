"""The wire format shared by MaskLoop's server and its remote client.

Pure numpy, pycocotools and Pillow (an import-linter contract keeps Qt, torch and the HTTP
stacks out): ``messages`` is the envelope and the messages, ``codecs`` the mask/logit codecs.
"""
