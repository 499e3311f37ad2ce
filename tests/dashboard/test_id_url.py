"""`{% id_url %}` links to exactly where `{% url %}` does, under a script prefix too."""

from django.template import Context, Template
from django.urls import reverse, set_script_prefix

LINKS = Template(
    "{% load pixelmill %}{% id_url 'output-compare' pk %} {% id_url 'version-compare' campaign recipe %}"
)


def render(**ids: int) -> str:
    return LINKS.render(Context(ids))


def test_id_url_gives_the_reversed_url_for_each_id():
    for pk, campaign, recipe in [(1, 2, 3), (98765, 10, 10), (8642097532, 7, 8642097531)]:
        assert render(pk=pk, campaign=campaign, recipe=recipe) == (
            f"{reverse('output-compare', args=[pk])} {reverse('version-compare', args=[campaign, recipe])}"
        )


def test_id_url_follows_the_script_prefix():
    set_script_prefix("/pixelmill/")
    try:
        assert (
            render(pk=5, campaign=6, recipe=7)
            == "/pixelmill/outputs/5/compare/ /pixelmill/campaigns/6/recipes/7/versions/"
        )
    finally:
        set_script_prefix("/")
    assert render(pk=5, campaign=6, recipe=7) == "/outputs/5/compare/ /campaigns/6/recipes/7/versions/"
