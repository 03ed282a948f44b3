"""Price plans and invoices: pure functions over recorded usage."""
