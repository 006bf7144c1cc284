"""The clinician viewer: server-rendered pages over the same interactions and repository as the
FHIR API, with the logged-in principal (docs/viewer.md). The blocks (:mod:`hie.web.pages`,
``templates/blocks.html``) are shared with the patient portal."""
