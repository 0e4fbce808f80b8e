def test_health_is_503_until_a_model_is_active(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "model_version": None}


def test_health_names_the_active_version(app, client, trained):
    import shutil

    from web.services import get_registry

    version = trained.version
    with app.app_context():
        registry = get_registry()
        shutil.copytree(version.path, registry.root / version.version)
        registry.activate(version.version)
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_version": version.version}
