"""aiinfra: one blueprint per environment -> validated spec -> plan -> render -> executors."""

__version__ = "0.1.0"
