"""What a run leaves behind for people: history files (`history`) and plots (`plot`)."""
