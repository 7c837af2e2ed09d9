"""Placeholder: the infra work replaces this with the official-format persistence."""


def persistent_class(orig_class):
    return orig_class
