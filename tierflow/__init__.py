"""tierflow: multi-agent orchestration on LangGraph with device-tier model routing."""

__version__ = "0.1.0"
