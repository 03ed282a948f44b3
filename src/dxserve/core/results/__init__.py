"""Results: what a diagnosis says, in dxserve's JSON and (later) FHIR and DICOM SR."""
