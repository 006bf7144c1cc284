"""HL7 v2 over MLLP (Minimal Lower Layer Protocol, HL7 v2.5 Implementation Guide
appendix C.4): https://www.hl7.org/implement/standards/product_brief.cfm?product_id=55
"""
