from django.contrib import admin
from django.urls import include, path
from outbox import views

urlpatterns = [
    path("", views.send_test_message, name="home"),
    path("admin/", admin.site.urls),
    path("smtprelay/", include("django_smtprelay.urls")),
]
