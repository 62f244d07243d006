from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("wechat/callback/", views.wechat_callback),
    path("logout/", views.logout),
]
