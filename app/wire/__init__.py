"""The wire format shared by MaskLoop's server and its remote client.

Pure numpy, pycocotools and Pillow (an import-linter contract keeps Qt, torch and the HTTP
stacks out): ``container`` is the one binary container (a safetensors file; the embedding cache
files use it too), ``messages`` the envelope and the messages, ``codecs`` the mask/logit codecs.
"""
