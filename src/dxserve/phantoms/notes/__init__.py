"""Phantom clinical notes: invented patients written up as discharge summaries, clinic letters,
emergency notes, progress notes, echo reports and referral e-mails, each with its truth — every
identifier's span and HIPAA type, every finding's span, assertion and ICD-10-CM code. Material
for training and measuring the text models (de-identification, assertions, coding); none of it
is about a real person."""
