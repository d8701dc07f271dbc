"""Files and their formats: raw and processed FITS, tile compression, the datastore (file:// and s3://), and
the calibration cache of warm workers."""
