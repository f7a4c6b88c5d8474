"""Extensions created unbound; the app factory binds them."""

from flask_socketio import SocketIO

socketio = SocketIO()
