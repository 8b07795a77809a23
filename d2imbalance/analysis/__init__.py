"""Dataset and model analyses shared by the projects (match-count histograms, misalignment statistics)."""
