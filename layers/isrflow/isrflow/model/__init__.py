"""The model every component agrees on: messages, typed errors, the observation model and header
translators, section geometry and time scales."""
