"""Singer tap for Amplitude."""
