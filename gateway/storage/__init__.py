"""Storage: conversation trackers, conversation locks, model store and model events."""
