"""PIXEL-M4's task-side processing on top of the renderer, shared by the task collators and the
shipped pipelines (being moved here from the tasks module, issue #17). The pixel fallback's
processor is in processing_pixel_fallback.py."""
