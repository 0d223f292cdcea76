#!/usr/bin/env python3
"""Independent SAML 2.0 test IdP for the gatehouse SP tests.

Built on PyPI ``pysaml2``: the Response / Assertion are made with its element
classes (``saml2.saml``, ``saml2.samlp``), signature and encryption templates
come from ``saml2.sigver.pre_signature_part`` / ``pre_encryption_part``, and
signing / encryption are done by ``saml2.sigver.CryptoBackendXmlSec1`` (which
drives the ``xmlsec1`` binary).  ``lxml`` is used only to assemble the signed
pieces and to apply the deliberate attacks afterwards.

Usage:  tests/.venv/bin/python tests/peers/saml_idp.py  < request.json

Input: one JSON object on stdin (see ``KNOWN_KEYS`` / ``parse_request``):
  required: idp_entity_id, idp_key_pem, idp_cert_pem, sp_entity_id, acs_url,
            name_id
  optional: in_response_to (str|null; null/absent = IdP-initiated),
            name_id_format (default emailAddress),
            attributes {name: [str, ...]}   (NameFormat basic),
            sign_response (default true; default false for the xsw_* attacks),
            sign_assertion (default true),
            sign_alg "rsa-sha256"|"rsa-sha1", digest_alg "sha256"|"sha1",
            issue_instant_offset (0), not_before_offset (-60),
            not_on_or_after_offset (300)           [seconds relative to now;
              authn_instant_offset (default: issue_instant_offset) sets AuthnInstant alone
              (an IdP answering from its own session);
              issue_instant_offset sets Response/Assertion IssueInstant and
              AuthnInstant, not_on_or_after_offset sets both Conditions and
              SubjectConfirmationData NotOnOrAfter],
            status "success"|"responder"|<any full status URN>,
            audience, omit_audience_restriction, destination,
            omit_destination, recipient, assertion_id, response_id,
            session_index (default random),
            encrypt_assertion + sp_cert_pem, encryption_alg
              ("aes128-cbc" default, "aes256-cbc", "aes128-gcm", "aes256-gcm"),
            attack (see ATTACKS below), attack_name_id, comment_prefix,
            comment_suffix.
  Unknown keys are rejected (typos in an attack corpus must not pass silently).

Output: one JSON object on stdout:
  {"saml_response": base64(xml), "xml": xml, "assertion_id": ..,
   "response_id": .., "evil_assertion_id"?: .., "evil_response_id"?: ..}
  assertion_id / response_id are always those of the GENUINE (IdP-built)
  assertion / response; evil_* ids are present only for attacks that add
  forged elements.

Invalid input: message on stderr, exit status 2.
"""

import base64
import copy
import datetime
import json
import os
import sys
import tempfile
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2 import saml, samlp
from saml2 import xmldsig as ds
from saml2.sigver import (
    RSA_OAEP_MGF1P,
    CryptoBackendXmlSec1,
    get_xmlsec_binary,
    pre_encryption_part,
    pre_signature_part,
)

NS_SAML = saml.NAMESPACE  # urn:oasis:names:tc:SAML:2.0:assertion
NS_SAMLP = samlp.NAMESPACE  # urn:oasis:names:tc:SAML:2.0:protocol
NS_DS = ds.NAMESPACE  # http://www.w3.org/2000/09/xmldsig#
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NSMAP = {"saml": NS_SAML, "samlp": NS_SAMLP, "ds": NS_DS, "xenc": NS_XENC}
# Prefixes used when pysaml2 serialises its element classes.
NSPAIR = {"saml": NS_SAML, "samlp": NS_SAMLP, "ds": NS_DS}

ASSERTION_CLASS = f"{NS_SAML}:Assertion"  # xmlsec1 --id-attr:ID node names
RESPONSE_CLASS = f"{NS_SAMLP}:Response"

SIGN_ALGS = {"rsa-sha256": ds.SIG_RSA_SHA256, "rsa-sha1": ds.SIG_RSA_SHA1}
DIGEST_ALGS = {"sha256": ds.DIGEST_SHA256, "sha1": ds.DIGEST_SHA1}
# encryption_alg -> (EncryptionMethod URI, xmlsec1 --session-key type)
ENC_ALGS = {
    "aes128-cbc": ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "aes-128"),
    "aes256-cbc": ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "aes-256"),
    "aes128-gcm": ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "aes-128"),
    "aes256-gcm": ("http://www.w3.org/2009/xmlenc11#aes256-gcm", "aes-256"),
}
STATUS = {"success": samlp.STATUS_SUCCESS, "responder": samlp.STATUS_RESPONDER}

# Attacks (all applied to an otherwise correctly built response):
#
# tamper_after_sign  Build and sign normally, then replace the text of the
#                    assertion's Subject/NameID with attack_name_id.  Every
#                    Signature element is left untouched, so the assertion
#                    digest (and, when the Response is signed, the Response
#                    digest) no longer match.
# untrusted_key      Everything is signed with a freshly generated RSA-2048
#                    key; KeyInfo carries the matching fresh self-signed cert
#                    (CN "untrusted test IdP").  The
#                    signatures are cryptographically valid but not made with
#                    the configured IdP key.
# xsw_before         XML signature wrapping ("XSW3" in SAML Raider's naming).  Only
#                    the assertion is signed (sign_response must be false).
#                    An unsigned copy of the genuine assertion, with a new ID
#                    and NameID = attack_name_id, is inserted as the FIRST
#                    assertion child of the Response (right after Status);
#                    the genuine signed assertion follows and still verifies.
# xsw_after          Same as xsw_before but the evil copy is inserted AFTER
#                    the genuine signed assertion.
# xsw_extensions     The genuine signed assertion is moved into a
#                    <samlp:Extensions> element of the Response (placed after
#                    Issuer, as the schema orders it) and the evil unsigned
#                    copy takes its normal place after Status.  The genuine
#                    signature still verifies (ID-based reference).
# xsw_advice         The wrapping variant of "On Breaking SAML" (Somorovsky et
#                    al. 2012): the signed assertion is hidden in an element the
#                    schema allows to carry assertions.  The evil unsigned
#                    assertion (new ID, NameID = attack_name_id) sits in the
#                    normal place after Status and the GENUINE signed assertion
#                    is moved inside the evil assertion's <saml:Advice>
#                    (inserted after Conditions, as the schema orders it).  The
#                    genuine signature still verifies; the evil one is
#                    unsigned.  (Placing an evil assertion into the genuine
#                    assertion's Advice after signing would merely break the
#                    digest, which tamper_after_sign already covers.)
# wrapped_response   Wrapping of the Response signature.  sign_response
#                    must be true.  The genuine signed Response is put inside
#                    a <samlp:Extensions> of a new, unsigned evil Response
#                    which becomes the document root.  The evil Response copies
#                    the genuine header (Destination, InResponseTo, Issuer,
#                    Status) but has a new ID and contains an unsigned copy of
#                    the assertion with a new ID and NameID = attack_name_id.
#                    The genuine Response signature still verifies.
# comment_in_nameid  Before signing, the NameID content becomes
#                    comment_prefix + <!----> + comment_suffix (the name_id
#                    input is ignored).  Exclusive c14n without comments drops
#                    the comment, so the signatures verify and the signed
#                    identity is prefix+suffix ("victim@acme.test.evil.test");
#                    a parser that reads only the first text node sees
#                    "victim@acme.test".
# doctype            A valid signed response prefixed with
#                    <!DOCTYPE samlp:Response [<!ENTITY ...>]> declaring one
#                    internal entity that is NOT referenced anywhere, so the
#                    signatures still verify; an SP must reject any DTD.
# entity             Billion laughs: a DOCTYPE declaring lol0..lol9 (each
#                    lolN = 10 x lol(N-1), ~10^9 "lol" in total) and the
#                    NameID content replaced by &lol9; after signing (so the
#                    digest is also wrong).  An SP must refuse without
#                    expanding it.
ATTACKS = {
    "tamper_after_sign",
    "untrusted_key",
    "xsw_before",
    "xsw_after",
    "xsw_extensions",
    "xsw_advice",
    "wrapped_response",
    "comment_in_nameid",
    "doctype",
    "entity",
}
XSW_ATTACKS = {"xsw_before", "xsw_after", "xsw_extensions", "xsw_advice"}

REQUIRED_STR = ["idp_entity_id", "idp_key_pem", "idp_cert_pem", "sp_entity_id", "acs_url", "name_id"]
OPTIONAL_STR = [
    "name_id_format",
    "sign_alg",
    "digest_alg",
    "status",
    "audience",
    "destination",
    "recipient",
    "assertion_id",
    "response_id",
    "session_index",
    "sp_cert_pem",
    "encryption_alg",
    "attack",
    "attack_name_id",
    "comment_prefix",
    "comment_suffix",
]
OPTIONAL_BOOL = [
    "sign_response",
    "sign_assertion",
    "omit_audience_restriction",
    "omit_destination",
    "encrypt_assertion",
]
OPTIONAL_INT = ["issue_instant_offset", "not_before_offset", "not_on_or_after_offset", "authn_instant_offset"]
KNOWN_KEYS = set(REQUIRED_STR + OPTIONAL_STR + OPTIONAL_BOOL + OPTIONAL_INT + ["in_response_to", "attributes"])


class InputError(Exception):
    """Invalid request: reported on stderr with exit status 2."""


# --------------------------------------------------------------------------
# input handling


def parse_request(req):
    """Validate the request and fill in defaults; returns a new dict."""
    if not isinstance(req, dict):
        raise InputError("input must be a JSON object")
    unknown = sorted(set(req) - KNOWN_KEYS)
    if unknown:
        raise InputError(f"unknown keys: {', '.join(unknown)}")
    for k in REQUIRED_STR:
        if not isinstance(req.get(k), str) or not req[k]:
            raise InputError(f"'{k}' is required and must be a non-empty string")
    for k in OPTIONAL_STR:
        if k in req and not isinstance(req[k], str):
            raise InputError(f"'{k}' must be a string")
    for k in OPTIONAL_BOOL:
        if k in req and not isinstance(req[k], bool):
            raise InputError(f"'{k}' must be a boolean")
    for k in OPTIONAL_INT:
        if k in req and (isinstance(req[k], bool) or not isinstance(req[k], int)):
            raise InputError(f"'{k}' must be an integer (seconds)")
    if req.get("in_response_to") is not None and not isinstance(req["in_response_to"], str):
        raise InputError("'in_response_to' must be a string or null")

    attrs = req.get("attributes", {})
    if not isinstance(attrs, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in attrs.values()
    ):
        raise InputError("'attributes' must be an object mapping names to lists of strings")

    r = dict(req)
    r["attributes"] = attrs
    r.setdefault("in_response_to", None)
    r.setdefault("name_id_format", saml.NAMEID_FORMAT_EMAILADDRESS)
    r.setdefault("sign_alg", "rsa-sha256")
    r.setdefault("digest_alg", "sha256")
    r.setdefault("status", "success")
    r.setdefault("issue_instant_offset", 0)
    r.setdefault("not_before_offset", -60)
    r.setdefault("not_on_or_after_offset", 300)
    r.setdefault("audience", r["sp_entity_id"])
    r.setdefault("destination", r["acs_url"])
    r.setdefault("recipient", r["acs_url"])
    r.setdefault("attack_name_id", "attacker@evil.test")
    r.setdefault("comment_prefix", "victim@acme.test")
    r.setdefault("comment_suffix", ".evil.test")
    r.setdefault("encryption_alg", "aes128-cbc")
    for k in ("omit_audience_restriction", "omit_destination", "encrypt_assertion"):
        r.setdefault(k, False)
    r.setdefault("sign_assertion", True)

    attack = r.get("attack")
    if attack is not None and attack not in ATTACKS:
        raise InputError(f"unknown attack '{attack}' (known: {', '.join(sorted(ATTACKS))})")
    # XSW variants only make sense with the assertion signed and the Response
    # unsigned (a Response signature would simply break when the tree is
    # rearranged), so sign_response defaults to false for them.
    r.setdefault("sign_response", attack not in XSW_ATTACKS)

    if r["sign_alg"] not in SIGN_ALGS:
        raise InputError(f"sign_alg must be one of {sorted(SIGN_ALGS)}")
    if r["digest_alg"] not in DIGEST_ALGS:
        raise InputError(f"digest_alg must be one of {sorted(DIGEST_ALGS)}")
    if r["encryption_alg"] not in ENC_ALGS:
        raise InputError(f"encryption_alg must be one of {sorted(ENC_ALGS)}")
    if r["status"] not in STATUS and not r["status"].startswith("urn:"):
        raise InputError("status must be 'success', 'responder' or a status code URN")
    if r["encrypt_assertion"] and not r.get("sp_cert_pem"):
        raise InputError("encrypt_assertion requires sp_cert_pem")
    if attack and r["encrypt_assertion"]:
        raise InputError("attacks are not supported together with encrypt_assertion")
    if attack in XSW_ATTACKS and (r["sign_response"] or not r["sign_assertion"]):
        raise InputError(f"{attack} requires sign_assertion=true and sign_response=false")
    if attack == "wrapped_response" and not r["sign_response"]:
        raise InputError("wrapped_response requires sign_response=true")
    if attack in ("tamper_after_sign", "untrusted_key", "doctype", "comment_in_nameid") and not (
        r["sign_response"] or r["sign_assertion"]
    ):
        raise InputError(f"{attack} needs at least one of sign_response / sign_assertion")
    for k in ("assertion_id", "response_id"):
        if k in r and (not r[k] or r[k][0].isdigit() or any(c in r[k] for c in " \t\n:<>&\"'")):
            raise InputError(f"'{k}' must be a valid xs:ID (NCName)")
    return r


def load_cert(pem, what):
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except Exception as e:  # noqa: BLE001 - any parse failure is bad input
        raise InputError(f"{what} is not a PEM certificate: {e}") from e


def load_key(pem, what):
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{what} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{what} must be an RSA key")
    return key


def cert_b64(cert):
    """Base64 DER body of a certificate, as put into ds:X509Certificate."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def fresh_key_and_cert():
    """A new RSA key + self-signed cert for the untrusted_key attack."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "untrusted test IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def new_id():
    # xs:ID must not start with a digit
    return "_" + uuid.uuid4().hex


# --------------------------------------------------------------------------
# building blocks


def ts(now, offset):
    return (now + datetime.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_assertion(r, now, assertion_id, sig_template):
    """The Assertion as a pysaml2 element (a Signature template if signing)."""
    scd = saml.SubjectConfirmationData(
        not_on_or_after=ts(now, r["not_on_or_after_offset"]),
        recipient=r["recipient"],
    )
    if r["in_response_to"] is not None:
        scd.in_response_to = r["in_response_to"]

    conditions = saml.Conditions(
        not_before=ts(now, r["not_before_offset"]),
        not_on_or_after=ts(now, r["not_on_or_after_offset"]),
    )
    if not r["omit_audience_restriction"]:
        conditions.audience_restriction = [saml.AudienceRestriction(audience=[saml.Audience(text=r["audience"])])]

    authn = saml.AuthnStatement(
        authn_instant=ts(now, r.get("authn_instant_offset", r["issue_instant_offset"])),
        session_index=r.get("session_index") or new_id(),
        authn_context=saml.AuthnContext(
            authn_context_class_ref=saml.AuthnContextClassRef(text=saml.AUTHN_PASSWORD_PROTECTED)
        ),
    )

    assertion = saml.Assertion(
        id=assertion_id,
        version="2.0",
        issue_instant=ts(now, r["issue_instant_offset"]),
        issuer=saml.Issuer(text=r["idp_entity_id"], format=saml.NAMEID_FORMAT_ENTITY),
        subject=saml.Subject(
            name_id=saml.NameID(text=r["name_id"], format=r["name_id_format"]),
            subject_confirmation=[
                saml.SubjectConfirmation(method=saml.SCM_BEARER, subject_confirmation_data=scd)
            ],
        ),
        conditions=conditions,
        authn_statement=[authn],
    )
    if r["attributes"]:
        assertion.attribute_statement = [
            saml.AttributeStatement(
                attribute=[
                    saml.Attribute(
                        name=name,
                        name_format=saml.NAME_FORMAT_BASIC,
                        attribute_value=[saml.AttributeValue(text=v) for v in values],
                    )
                    for name, values in r["attributes"].items()
                ]
            )
        ]
    if sig_template is not None:
        assertion.signature = sig_template
    return assertion


def build_response(r, now, response_id, sig_template):
    """The Response (without assertion) as a pysaml2 element."""
    status_uri = STATUS.get(r["status"], r["status"])
    response = samlp.Response(
        id=response_id,
        version="2.0",
        issue_instant=ts(now, r["issue_instant_offset"]),
        issuer=saml.Issuer(text=r["idp_entity_id"], format=saml.NAMEID_FORMAT_ENTITY),
        status=samlp.Status(status_code=samlp.StatusCode(value=status_uri)),
    )
    if not r["omit_destination"]:
        response.destination = r["destination"]
    if r["in_response_to"] is not None:
        response.in_response_to = r["in_response_to"]
    if sig_template is not None:
        response.signature = sig_template
    return response


def to_lxml(pysaml2_elem):
    return etree.fromstring(pysaml2_elem.to_string(nspair=NSPAIR))


def q(ns, local):
    return f"{{{NS_SAML if ns == 'saml' else NS_SAMLP}}}{local}"


def child(elem, ns, local):
    return elem.find(q(ns, local))


def set_nameid_text(assertion_el, text):
    nameid = assertion_el.find(f"{q('saml', 'Subject')}/{q('saml', 'NameID')}")
    for c in list(nameid):  # drop comments etc.
        nameid.remove(c)
    nameid.text = text
    return nameid


def evil_copy(genuine_assertion_el, evil_name_id):
    """Unsigned copy of an assertion with a new ID and a forged NameID."""
    evil = copy.deepcopy(genuine_assertion_el)
    for sig in evil.findall(f"{{{NS_DS}}}Signature"):
        evil.remove(sig)
    evil_id = new_id()
    evil.set("ID", evil_id)
    set_nameid_text(evil, evil_name_id)
    return evil, evil_id


class Signer:
    """pysaml2's xmlsec1 backend plus the key material it needs on disk."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.crypto = CryptoBackendXmlSec1(get_xmlsec_binary())

    def write(self, name, data):
        path = os.path.join(self.tmpdir, name)
        with open(path, "w", encoding="ascii") as f:
            f.write(data)
        return path

    def sign(self, root, node_name, node_id, key_file):
        """Sign the Signature template inside the node with ID node_id."""
        signed = self.crypto.sign_statement(etree.tostring(root).decode(), node_name, key_file, node_id)
        return etree.fromstring(signed.encode())

    def encrypt(self, assertion_el, sp_cert_file, enc_alg):
        """Encrypt a (signed) assertion; returns the xenc:EncryptedData element.

        The assertion is encrypted as the root of its own document, so the
        plaintext carries all its namespace declarations (decrypting it gives
        a self-contained <saml:Assertion>, as real IdPs such as Entra emit).
        """
        msg_enc, session_key = ENC_ALGS[enc_alg]
        template = pre_encryption_part(msg_enc=msg_enc, key_enc=RSA_OAEP_MGF1P)
        out = self.crypto.encrypt_assertion(
            etree.tostring(assertion_el).decode(),
            sp_cert_file,
            template.to_string(nspair={"xenc": NS_XENC, "ds": NS_DS}).decode(),
            key_type=session_key,
            node_xpath="/*",
        )
        return etree.fromstring(out.encode())


def serialize(root):
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(root)


# --------------------------------------------------------------------------
# main flow


def generate(r):
    attack = r.get("attack")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assertion_id = r.get("assertion_id") or new_id()
    response_id = r.get("response_id") or new_id()
    sign_alg = SIGN_ALGS[r["sign_alg"]]
    digest_alg = DIGEST_ALGS[r["digest_alg"]]

    idp_key = load_key(r["idp_key_pem"], "idp_key_pem")
    idp_cert = load_cert(r["idp_cert_pem"], "idp_cert_pem")
    if idp_key.public_key().public_numbers() != idp_cert.public_key().public_numbers():
        raise InputError("idp_key_pem does not match idp_cert_pem")
    if attack == "untrusted_key":
        idp_key, idp_cert = fresh_key_and_cert()
    key_pem = idp_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()

    def sig_template(ident):
        return pre_signature_part(ident, cert_b64(idp_cert), sign_alg=sign_alg, digest_alg=digest_alg)

    with tempfile.TemporaryDirectory(prefix="saml_idp_") as tmpdir:
        signer = Signer(tmpdir)
        key_file = signer.write("idp_key.pem", key_pem)

        # 1. The assertion, signed on its own: its root carries every
        #    namespace declaration it needs, so it stays self-contained once
        #    placed into the Response or encrypted.
        assertion = to_lxml(
            build_assertion(r, now, assertion_id, sig_template(assertion_id) if r["sign_assertion"] else None)
        )
        if attack == "comment_in_nameid":
            nameid = set_nameid_text(assertion, r["comment_prefix"])
            comment = etree.Comment("")  # serialises as <!---->
            comment.tail = r["comment_suffix"]
            nameid.append(comment)
        if r["sign_assertion"]:
            assertion = signer.sign(assertion, ASSERTION_CLASS, assertion_id, key_file)

        # 2. The Response around it (optionally with the assertion encrypted).
        response = to_lxml(
            build_response(r, now, response_id, sig_template(response_id) if r["sign_response"] else None)
        )
        if r["encrypt_assertion"]:
            sp_cert = load_cert(r["sp_cert_pem"], "sp_cert_pem")
            sp_cert_file = signer.write(
                "sp_cert.pem", sp_cert.public_bytes(serialization.Encoding.PEM).decode()
            )
            enc = etree.SubElement(response, q("saml", "EncryptedAssertion"))
            enc.append(signer.encrypt(assertion, sp_cert_file, r["encryption_alg"]))
        else:
            response.append(assertion)

        # 3. Response signature last, over the final content.
        if r["sign_response"]:
            response = signer.sign(response, RESPONSE_CLASS, response_id, key_file)

    # 4. Post-signing attacks.
    out = {"assertion_id": assertion_id, "response_id": response_id}
    root = response
    genuine = child(response, "saml", "Assertion")
    doctype = None

    if attack == "tamper_after_sign":
        set_nameid_text(genuine, r["attack_name_id"])

    elif attack in ("xsw_before", "xsw_after"):
        evil, out["evil_assertion_id"] = evil_copy(genuine, r["attack_name_id"])
        if attack == "xsw_before":
            genuine.addprevious(evil)
        else:
            genuine.addnext(evil)

    elif attack == "xsw_extensions":
        evil, out["evil_assertion_id"] = evil_copy(genuine, r["attack_name_id"])
        genuine.addprevious(evil)  # evil takes the normal place after Status
        ext = etree.Element(q("samlp", "Extensions"), nsmap={"samlp": NS_SAMLP})
        ext.append(genuine)  # moves the genuine assertion
        child(response, "saml", "Issuer").addnext(ext)  # Issuer, Signature?, Extensions, Status

    elif attack == "xsw_advice":
        evil, out["evil_assertion_id"] = evil_copy(genuine, r["attack_name_id"])
        genuine.addprevious(evil)
        advice = etree.Element(q("saml", "Advice"), nsmap={"saml": NS_SAML})
        child(evil, "saml", "Conditions").addnext(advice)  # ..., Conditions, Advice, statements
        advice.append(genuine)  # moves the genuine signed assertion

    elif attack == "wrapped_response":
        evil_response = etree.Element(
            q("samlp", "Response"), attrib=dict(response.attrib), nsmap={"samlp": NS_SAMLP, "saml": NS_SAML}
        )
        out["evil_response_id"] = new_id()
        evil_response.set("ID", out["evil_response_id"])
        evil_response.append(copy.deepcopy(child(response, "saml", "Issuer")))
        ext = etree.SubElement(evil_response, q("samlp", "Extensions"))
        evil_response.append(copy.deepcopy(child(response, "samlp", "Status")))
        evil, out["evil_assertion_id"] = evil_copy(genuine, r["attack_name_id"])
        evil_response.append(evil)
        ext.append(response)  # the genuine signed Response, untouched
        root = evil_response

    elif attack == "doctype":
        doctype = '<!DOCTYPE samlp:Response [\n<!ENTITY gatehouse_test "declared but never referenced">\n]>\n'

    elif attack == "entity":
        lols = ['<!ENTITY lol0 "lol">'] + [
            f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
        ]
        doctype = "<!DOCTYPE samlp:Response [\n" + "\n".join(lols) + "\n]>\n"
        placeholder = "GATEHOUSE-ENTITY-PLACEHOLDER"
        set_nameid_text(genuine, placeholder)

    xml = serialize(root).decode()
    if doctype:
        decl, body = xml.split("\n", 1)
        xml = decl + "\n" + doctype + body
    if attack == "entity":
        xml = xml.replace(placeholder, "&lol9;")

    out["xml"] = xml
    out["saml_response"] = base64.b64encode(xml.encode()).decode()
    return out


def main():
    try:
        raw = sys.stdin.read()
        try:
            req = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"stdin is not valid JSON: {e}") from e
        result = generate(parse_request(req))
    except InputError as e:
        print(f"saml_idp.py: invalid input: {e}", file=sys.stderr)
        sys.exit(2)
    json.dump(
        {k: result[k] for k in ("saml_response", "xml", "assertion_id", "response_id")}
        | {k: v for k, v in result.items() if k.startswith("evil_")},
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
