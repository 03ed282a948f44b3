"""The HTTP front: FastAPI only. Routes parse, authorize, call one service function, serialize."""
