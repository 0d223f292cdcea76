"""The home page, and the authentication backend that keeps gatehouse's claims."""

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

SHOWN = ("sub", "email", "name", "org", "role", "groups")


def pick(claims):
    return {k: claims.get(k) for k in SHOWN}


class GatehouseBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, plus what it leaves out: the ID token's `iss` and `aud`
    (it checks signature, algorithm, expiry and nonce only), and the claims it does not keep
    (org, role) — kept in the session, from the ID token and from userinfo."""

    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation(f"ID token from another issuer: {payload.get('iss')!r}")
        aud = payload.get("aud")
        if self.OIDC_RP_CLIENT_ID not in (aud if isinstance(aud, list) else [aud]):
            raise SuspiciousOperation(f"ID token for another audience: {aud!r}")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        info = super().get_userinfo(access_token, id_token, payload)
        self.request.session["gatehouse"] = {"id_token": pick(payload), "userinfo": pick(info)}
        return info

    def create_user(self, claims):
        user = super().create_user(claims)
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        user.first_name = claims.get("given_name", "")
        user.last_name = claims.get("family_name", "")
        user.save()
        return user


def home(request):
    claims = request.session.get("gatehouse", {}) if request.user.is_authenticated else {}
    return render(
        request,
        "home.html",
        {
            "id_token": claims.get("id_token", {}),
            "userinfo": claims.get("userinfo", {}),
            "failed": "failed" in request.GET,
        },
    )
