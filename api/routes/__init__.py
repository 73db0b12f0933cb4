"""One module per resource; each is a flask-smorest blueprint."""
