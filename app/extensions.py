"""Flask extension objects, created once and bound to the app in ``app.web.create_app``."""
from __future__ import annotations

from flask_cors import CORS
from flask_jwt_extended import JWTManager

jwt = JWTManager()
cors = CORS()  # bound only when CORS_ORIGINS names origins (app.web._enable_cors)
