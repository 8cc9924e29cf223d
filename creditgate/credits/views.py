"""The invitation link's page (/team/join/<token>/): who invites you to what, with which role and
cap, and what happens to your own account; logged out, the ways to log in or sign up and come
back; logged in, a Join button (a form: the page works without JavaScript)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from creditgate.core.errors import ApplicationError
from creditgate.credits import services, team


class JoinView(View):
    template_name = "credits/join.html"

    def _render(self, request, token, *, invitation=None, error=None, status=200):
        next_query = urlencode({"next": request.path})
        context = {"invitation": invitation, "error": error, "token": token,
                   "login_url": f"{reverse('account_login')}?{next_query}",
                   "signup_url": f"{reverse('account_signup')}?{next_query}"}
        if invitation is not None and request.user.is_authenticated:
            context["current"] = services.member_for_user(user=request.user)
        return render(request, self.template_name, context, status=status)

    def get(self, request, token):
        try:
            invitation = team.invitation_for_token(token=token)
        except ApplicationError as exc:
            return self._render(request, token, error=exc.message, status=exc.status_code)
        return self._render(request, token, invitation=invitation)

    def post(self, request, token):
        if not request.user.is_authenticated:
            return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({'next': request.path})}")
        try:
            member = team.invitation_accept(user=request.user, token=token)
        except ApplicationError as exc:
            try:
                invitation = team.invitation_for_token(token=token)
            except ApplicationError:
                invitation = None
            return self._render(request, token, invitation=invitation, error=exc.message,
                                status=exc.status_code)
        messages.success(request, f"You joined {member.account}.")
        return HttpResponseRedirect(reverse("team-page"))
