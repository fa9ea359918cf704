"""The prediction service: one worker thread, its jobs and their types."""
