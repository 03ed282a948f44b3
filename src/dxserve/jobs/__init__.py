"""Work done outside the request path: the training-job worker."""
