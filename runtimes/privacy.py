"""What counts as private text by default: one list for the tier router and for trace masking.

It imports nothing, so tracing can use the router's definition without importing the router.
"""

# Text that marks a message private by default: e-mail addresses, card/IBAN-like digit runs, phone numbers,
# secrets given as "password: x" or in plain words ("my password is x"), and well-known API key shapes.
DEFAULT_PRIVATE_PATTERNS: list[str] = [
    r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+",  # starts only where a word starts: linear on long text
    r"\b(?:\d[ -]?){13,19}\b",
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}\b",
    r"(?i)\b(?:password|passwd|passcode|pin|api[_-]?key|secret|ssn|token)\b\s*[:=]",
    r"(?i)\b(?:password|passwd|passcode|pin code|api[ _-]?key|secret key|social security number|ssn)"
    r"\s+(?:is|was|=)\s+\S+",
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bxox[baprs]-[A-Za-z0-9-]{10,}",
    r"(?<![\w.])\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?![\w.])|\(\d{3}\) ?\d{3}-\d{4}\b",
]
