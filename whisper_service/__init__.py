"""Whisper workers: RQ workers that keep models in memory and publish transcripts."""
