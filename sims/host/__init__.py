"""The host a run executes on: devices, the memory allocator, available memory."""
