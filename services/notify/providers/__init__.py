"""External providers (teleradiology companies): registry, signed webhooks, de-identification and
their own broker topics. ``subscriber.register_providers`` wires it into the notify service;
``commands`` holds ``mdd provider``. Heavy modules are imported only where they are used.
"""
