"""The dashboard and the public pages. Paths have no trailing slash: they are what people type and share."""

from django.contrib.auth import views as auth_views
from django.contrib.messages.views import SuccessMessageMixin
from django.urls import path, reverse_lazy

from portal.site import forms, views


class AccountView(SuccessMessageMixin, auth_views.PasswordChangeView):
    """The account page: who you are, and a password change form."""

    template_name = "registration/account.html"
    form_class = forms.PasswordChangeForm
    success_url = reverse_lazy("account")
    success_message = "Your password is changed. Other browsers signed in to this account are signed out."


urlpatterns = [
    path("", views.landing, name="landing"),
    path("models", views.models_page, name="models"),
    path("docs", views.docs, name="docs"),
    # accounts
    path("signup", views.signup, name="signup"),
    path(
        "login",
        auth_views.LoginView.as_view(authentication_form=forms.LoginForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("account", AccountView.as_view(), name="account"),
    path(
        "password-reset",
        auth_views.PasswordResetView.as_view(
            email_template_name="registration/password_reset_email.txt",
            subject_template_name="registration/password_reset_subject.txt",
            form_class=forms.PasswordResetForm,
        ),
        name="password_reset",
    ),
    path("password-reset/sent", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>",
        auth_views.PasswordResetConfirmView.as_view(form_class=forms.SetPasswordForm),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/complete",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # the dashboard
    path("dashboard", views.dashboard, name="dashboard"),
    path("keys", views.keys, name="keys"),
    path("keys/<int:key_id>/revoke", views.key_revoke_view, name="key_revoke"),
    path("billing", views.billing, name="billing"),
    path("billing/checkout", views.billing_checkout, name="billing_checkout"),
    path("billing/redeem", views.billing_redeem, name="billing_redeem"),
    path("billing/success", views.billing_success, name="billing_success"),
    path("billing/cancel", views.billing_cancel, name="billing_cancel"),
    path("usage", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage_export"),
    path("usage/<uuid:request_id>", views.usage_detail, name="usage_detail"),
]
