"""Facts, written once: GPUs, links, model architectures, numeric formats, version compatibility.

Every other module imports facts from here; nothing re-types a number that lives in the catalog.
"""
