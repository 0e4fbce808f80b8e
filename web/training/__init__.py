"""Training: the training form, the live job page, the training endpoints and the train command."""
