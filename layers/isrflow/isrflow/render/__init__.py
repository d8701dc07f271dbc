"""Images for people: zscale stretches, PNG encoding and the previews and mosaics of an execution."""
