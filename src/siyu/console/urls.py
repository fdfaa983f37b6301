from django.contrib.auth import views as auth_views
from django.urls import path

from siyu.console import analytics_views as av
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
    # analytics: the Overview dashboard, insights, saved dashboards (console/analytics_views.py)
    path("analytics/", av.overview, name="analytics"),
    path("analytics/overview/<slug:metric>/", av.overview_card, name="analytics_overview_card"),
    path("analytics/export.<str:fmt>", av.overview_export, name="analytics_overview_export"),
    path("analytics/insights/", av.insight_list, name="analytics_insights"),
    path("analytics/insights/new/<slug:kind>/", av.insight_new, name="analytics_insight_new"),
    path("analytics/insights/<int:pk>/", av.insight_detail, name="analytics_insight"),
    path("analytics/insights/<int:pk>/delete/", av.insight_delete, name="analytics_insight_delete"),
    path("analytics/insights/<int:pk>/add/", av.insight_add_to_dashboard, name="analytics_insight_add"),
    path("analytics/funnel/people/", av.funnel_people, name="analytics_funnel_people"),
    path("analytics/dashboards/", av.dashboard_list, name="analytics_dashboards"),
    path("analytics/dashboards/<int:pk>/", av.dashboard_detail, name="analytics_dashboard"),
    path("analytics/dashboards/<int:pk>/items/<int:insight_pk>/", av.dashboard_item,
         name="analytics_dashboard_item"),
    path("analytics/dashboards/<int:pk>/change/", av.dashboard_change, name="analytics_dashboard_change"),
    path("analytics/dashboards/<int:pk>/delete/", av.dashboard_delete, name="analytics_dashboard_delete"),
    path("analytics/dashboards/<int:pk>/export.<str:fmt>", av.dashboard_export, name="analytics_dashboard_export"),
    path("analytics/vega/<str:name>", av.vega_bundle, name="analytics_vega"),
]
