"""The folder sort (guessDir.sh): each photo of SRC copied to DEST by label and score, resumable."""
