"""The JSON logging set-up leaves the interpreter able to format other libraries' lines."""
import logging

from gunicorn.config import Config
from gunicorn.glogging import Logger

from app.logging_setup import configure_logging


def test_gunicorn_s_own_lines_still_format_after_the_json_set_up(capsys):
    configure_logging("INFO")
    log = Logger(Config())  # its error log: "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
    log.info("Worker exiting (pid: %s)", 1234)
    err = capsys.readouterr().err
    assert "Worker exiting (pid: 1234)" in err
    assert "--- Logging error ---" not in err
    assert logging.logProcesses
