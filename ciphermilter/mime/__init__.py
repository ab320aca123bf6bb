"""Byte-exact MIME, split as CPython's ``email`` is: model (:mod:`.model`), parser (:mod:`.parser`) and
writer (:mod:`.write`).

The parser module is named ``parser``, not ``parse``: ``mime.parse`` is the
function that makes an entity of a message, and a submodule of that name
would shadow it.
"""

from ciphermilter.mime import write
from ciphermilter.mime.model import (DEFAULT_MAX_DEPTH, Entity, Header, HeaderList, SpooledEntity,
                                     body_without_part_fields, parse, split_headers)
from ciphermilter.mime.parser import (DECODE_CHUNK, HEADER_CHUNK, DepthLimitExceeded, MimeError,
                                      decode_base64_chunks, decode_transfer_encoding, field_name, has_bare_cr,
                                      has_one_valid_boundary, has_uniform_delimiter_lines, multipart_spans,
                                      parse_content_type)

__all__ = [
    "DECODE_CHUNK", "DEFAULT_MAX_DEPTH", "HEADER_CHUNK", "DepthLimitExceeded", "Entity", "Header", "HeaderList",
    "MimeError", "SpooledEntity", "body_without_part_fields", "decode_base64_chunks", "decode_transfer_encoding",
    "field_name", "has_bare_cr", "has_one_valid_boundary", "has_uniform_delimiter_lines", "multipart_spans",
    "parse", "parse_content_type", "split_headers", "write",
]
