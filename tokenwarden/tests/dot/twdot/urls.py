"""URLs: DOT under /o/ (so the issuer is http://127.0.0.1:<port>/o), its RFC 8414
document also where RFC 8414 §3.1 puts it for that issuer, and the test sign-in."""

from django.urls import include, path

from oauth2_provider.views import OAuthServerMetadataView

from . import views

urlpatterns = [
    # All of DOT's endpoints: authorize/, token/, revoke_token/, introspect/,
    # device-authorization/, device/, .well-known/openid-configuration, ...
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # RFC 8414 §3.1: the issuer's path goes after the well-known part.
    path(
        ".well-known/oauth-authorization-server/o",
        OAuthServerMetadataView.as_view(),
        name="rfc8414-metadata",
    ),
    path("test/login/", views.test_login, name="test-login"),
]
