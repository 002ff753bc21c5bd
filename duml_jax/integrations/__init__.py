"""Adapters that let outside tools run this project's trackers (the VOT toolkit over TraX)."""
