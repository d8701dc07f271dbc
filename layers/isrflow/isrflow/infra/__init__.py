"""Infrastructure: settings from the environment, AWS clients, the registry queue, secrets, the Powertools
edge of every handler, custom resources and the deployed stack's client."""
