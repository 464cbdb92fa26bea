from django import forms


class TestMessageForm(forms.Form):
    """A test message. Addresses whose local part is ``nobody`` are refused by the demo relay."""

    to = forms.EmailField(initial="alice@example.com", help_text="Try nobody@example.com too.")
    subject = forms.CharField(max_length=200, initial="Hello from the example site")
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        initial="This message went through django-smtprelay.",
    )
