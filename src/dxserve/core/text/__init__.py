"""Clinical text: tokens with their offsets, and how de-identification is scored (more to come:
de-identification, sections, entities with assertions, ICD-10-CM coding)."""
