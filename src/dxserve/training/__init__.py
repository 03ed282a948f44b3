"""Training, export and evaluation of models. Only ``loop`` and ``export`` need torch."""
