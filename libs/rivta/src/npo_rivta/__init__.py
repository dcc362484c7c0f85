"""RIV-TA plumbing for the NPO services: safe XML, SOAP 1.1 envelopes and faults, the platform's
headers, the contracts' schemas and WSDLs, codecs to and from the project's types."""
