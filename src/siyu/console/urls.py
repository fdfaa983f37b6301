from django.contrib.auth import views as auth_views
from django.urls import path

from siyu.console import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="console/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("customers/", views.customer_list, name="customers"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path("customers/<int:pk>/reveal/", views.customer_reveal, name="customer_reveal"),
    path("customers/<int:pk>/timeline/", views.customer_timeline, name="customer_timeline"),
    path("conflicts/", views.conflict_list, name="conflicts"),
    path("conflicts/<int:pk>/resolve/", views.conflict_resolve, name="conflict_resolve"),
    path("sources/", views.source_list, name="sources"),
    path("sources/<int:pk>/rotate/", views.source_rotate, name="source_rotate"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/language/", views.language, name="language"),
]
