"""FaceDx's machine-learning core: pixels in, numbers and files out.

Nothing in this package imports Flask; the web layer calls it.
"""
