"""Test-only views: the sign-in page that DOT's pages send a signed-out user to."""

from django.contrib.auth import authenticate, login
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def test_login(request):
    """A plain sign-in form (fields `login` and `password`) for the test browser
    (tests/all/browser.rs); Django checks the password. Then on to `next`, the
    DOT page that asked for a signed-in user. A wrong login or password gets a
    page without a form, where the browser stops (rather than a form again)."""
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    if request.method == "POST":
        user = authenticate(
            request,
            username=request.POST.get("login", ""),
            password=request.POST.get("password", ""),
        )
        if user is None:
            return HttpResponse("wrong login or password\n", status=403, content_type="text/plain")
        login(request, user)
        return HttpResponseRedirect(next_url)
    # An absolute action, though the test browser can also do without one.
    action = request.build_absolute_uri(request.path)
    return render(request, "twdot/login.html", {"action": action, "next": next_url})
