// Public API (filled in by the constructs).
export {};
