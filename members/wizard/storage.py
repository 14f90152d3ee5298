"""django-formtools' wizard storage kept in a Draft row instead of the session."""

from formtools.wizard.storage import BaseStorage

from members.models import Draft


class DraftStorage(BaseStorage):
    """The view loads the draft (and checks its owner) before formtools builds the storage; it
    hands it over on the request, the one object formtools passes on."""

    def __init__(self, prefix, request=None, file_storage=None):
        super().__init__(prefix, request, file_storage)
        self.draft: Draft = request.mirror_draft
        if self.step_data_key not in self.draft.state:
            kept = self.draft.state.get(self.extra_data_key, {})  # jobs started beside a step
            self.init_data()
            self.extra_data = kept

    @property
    def data(self):
        return self.draft.state

    @data.setter
    def data(self, value):
        self.draft.state = value

    def update_response(self, response):
        super().update_response(response)
        self.draft.step = self.current_step or ""
        self.draft.save(update_fields=["state", "step", "title", "updated_at"])
