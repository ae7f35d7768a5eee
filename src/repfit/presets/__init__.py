"""Mappings shipped for the standard exports of common CRMs (``--mapping hubspot``); see ``repfit.mapping``."""
